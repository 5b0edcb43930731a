"""wattwise.web"""
