"""Streamlit glue for the dashboard pages: sign-in and roles, cached data, shared widgets.

Only this package and the pages import Streamlit; every number shown comes from ``auditlog``.
"""
