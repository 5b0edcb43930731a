"""wattwise.measure.scenario"""
