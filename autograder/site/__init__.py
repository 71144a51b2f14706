"""The submission site: students hand in from Colab in a browser, staff grade and release; a thin front door over
the stages below it, with its own data layer (tables, migrations, records) and sign-in (auth)."""
