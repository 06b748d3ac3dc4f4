"""Policies as constitutions: schema, loading and the pure decision rule."""
