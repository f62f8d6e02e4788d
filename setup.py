"""Persona: user profiles and segments from raw user data, with deep learning on Spark."""
from setuptools import find_packages, setup

setup(
    name="persona",
    version="0.1.0",
    description="User profiles and segments from raw user data: Spark, Delta Lake, "
    "a Horovod-trained autoencoder and MLlib K-Means, tracked in MLflow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"persona": ["log4j2.properties"]},
    install_requires=[
        "pyspark>=3.5,<3.6",
        "delta-spark>=3.3,<3.4",
        "petastorm==0.13.1",
        "mlflow>=3,<4",
        "pyyaml>=6",
        "numpy>=1.26,<2",
        "pandas>=2,<2.3",
        "pyarrow>=10,<11",
        "scikit-learn>=1.3",
        "umap-learn>=0.5.7,<0.6",
    ],
    extras_require={
        # Horovod is built against the installed TensorFlow; the Makefile installs both.
        "train": ["tensorflow==2.15.1", "tensorflow-privacy==0.9.0",
                  "tensorflow-probability==0.22.1", "dp-accounting==0.4.3",
                  "horovod[spark]==0.28.1"],
    },
    entry_points={"console_scripts": ["persona=persona.cli:main"]},
)
