"""Test support: throwaway PostgreSQL, database templates, API helpers."""
