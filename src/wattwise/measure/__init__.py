"""wattwise.measure"""
