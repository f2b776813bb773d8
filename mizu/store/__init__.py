"""The only package that writes SQL: pool, migrations and one module per aggregate."""
