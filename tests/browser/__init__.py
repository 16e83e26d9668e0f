"""Real-browser tests of the developer portal (Playwright driving Debian's Chromium)."""
