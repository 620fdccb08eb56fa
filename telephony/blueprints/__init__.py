"""One Blueprint per trigger family; handlers parse, call the domain, render."""
