"""The web app: unsubscribe pages (RFC 8058 one-click included) and the webhook receivers."""
