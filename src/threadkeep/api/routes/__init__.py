"""The API's routes, one module per noun; each route parses, calls one
Threadkeep method, and renders."""
