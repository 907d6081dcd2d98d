"""bench/run.py's sections: s3gate vs. a plain nginx reverse proxy vs. SeaweedFS direct, side by side.

stack.py     the three targets (the store, nginx, the gateway) and direct S3 calls
measure.py   curl transfers, CPU per party, py-spy profiles, stall watching
report.py    medians and the Markdown around the tables
transfers.py section 1 (1 GiB up and down), rss.py 2 (peak RSS), crowd.py 3
             (32 concurrent uploads), small.py 4 (small objects)
gen.py       the body generator piped into curl (``run.py _gen N``)
"""
