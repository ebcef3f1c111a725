"""Browser views of runs: the live dashboard (`--web`), the report's and comparison's charts.

All of them draw with one chart code (`static/charts.js`) on the vendored uPlot 1.6.32
(`static/uPlot.iife.min.js`, MIT, `static/uPlot.LICENSE`): the live page loads the files from
the dashboard server, the reports inline them, so nothing reaches a CDN and a report stays one
self-contained file.
"""
