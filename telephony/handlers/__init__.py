"""Entry points only, one Blueprint per trigger family: parse, call one service, render."""
