"""Shared test helpers: real processes, a real consumer endpoint, SOAP message builders."""
