"""wattwise.monitor"""
