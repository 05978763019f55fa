#!/bin/sh
# Test verifier: answers with a line that is not JSON, then reads on.
read -r line
echo "this is not json"
cat > /dev/null
