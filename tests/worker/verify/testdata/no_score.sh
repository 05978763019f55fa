#!/bin/sh
# Test verifier: answers the first request without a score.
read -r line
echo '{"id": 0, "pass": true}'
cat > /dev/null
