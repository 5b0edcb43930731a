"""wattwise.store"""
