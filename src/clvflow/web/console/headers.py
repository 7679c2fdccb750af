"""The console's security headers: its own pages run no script at all and cannot be framed;
an email (a preview or a run's sample) is shown with scripts, forms and plugins off, framed
only by the console. Nothing a page shows is kept by a browser or proxy cache."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

# console pages: styles from the console (and the report's own <style>), no script
PAGE_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# an email shown on its own (a run's sample): a sandbox with no script, framed by the console
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; "
    "form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox"
)
# the sandbox attribute of the preview's <iframe srcdoc>: no script, no form, no top navigation
IFRAME_SANDBOX = ""


def secure(headers: MutableHeaders, *, cache: bool = False) -> None:
    """Add the console's headers to a response's (those it set itself stay)."""
    defaults = {
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "private, max-age=3600" if cache else "no-store",
    }
    for name, value in defaults.items():
        if name not in headers:
            headers[name] = value
