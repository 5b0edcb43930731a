"""A side service: prints a GMT note every half second until it is stopped."""

import time

count = 0
while True:
    count += 1
    print(f"{time.time_ns() // 1000} heartbeat {count}", flush=True)
    time.sleep(0.5)
