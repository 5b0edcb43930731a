"""wattwise.providers"""
