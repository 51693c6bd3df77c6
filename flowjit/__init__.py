"""flowjit"""
