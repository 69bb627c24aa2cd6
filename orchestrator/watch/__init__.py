"""The watched bake: samples of every baking region, rules over them, and the switch back of one that breaks them."""
