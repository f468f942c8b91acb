"""One module per paper figure: the cells it needs and how to plot them."""
