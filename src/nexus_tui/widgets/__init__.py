"""The dashboard's panels. Each one only draws what it is given and posts what the user wants."""
