"""wattwise.jobmodel"""
