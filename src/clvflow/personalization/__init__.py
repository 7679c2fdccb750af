"""What makes an email personal: the customer's latest order, recommendations, promo codes."""
