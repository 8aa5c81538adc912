"""Package list for setuptools: the two source packages plus the top-level styles/ as nexus_tui.styles.

pyproject.toml holds everything else; the list lives here because the styles package sits outside src/
(the product keeps its TCSS at the top level), which `packages.find` cannot express.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src"), "nexus_tui.styles"])
