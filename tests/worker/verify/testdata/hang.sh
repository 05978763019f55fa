#!/bin/sh
# Test verifier: never answers (a child process that sleeps, so the process-group kill is
# exercised too).
sleep 60
