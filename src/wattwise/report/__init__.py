"""wattwise.report"""
