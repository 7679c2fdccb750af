"""What every marketing email must carry: signed unsubscribe links and their headers."""
