"""DICOM PS3.15 A.5.1 audit message schemas (XSD translations by IPF); see SOURCES.md beside this file.

A package only so that setuptools ships the ``*.xsd`` files as package data.
"""
