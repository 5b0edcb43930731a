"""wattwise.cluster"""
