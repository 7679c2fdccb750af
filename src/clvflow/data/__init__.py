"""Reading the shop's data (customers, orders, items, products); never writing it."""
