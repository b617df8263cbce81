"""Placeholder: filled by issue 14."""
