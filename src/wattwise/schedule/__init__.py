"""wattwise.schedule"""
