// Number extraction for the `numeric` verifier: the answer a sample commits to.
// Pure functions; thread-safe.
//
// Rules (docs/GENERATION.md, "Verifiers"):
//  1. The content of the last \boxed{...} (braces nested), if it holds a
//     number: its final number.
//  2. Else the text after the last "####" (GSM8K's answer marker), if it holds
//     a number: its first number.
//  3. Else the final number in the text.
// A number is: an optional minus ('-' or U+2212 when not preceded by a letter
// or digit), digits with optional thousands separators (1,234,567: groups of
// exactly three), an optional decimal part (.5, 3.25), an optional exponent
// (1e-3, 2.5E+4), or a fraction a/b of two integers (3/4, -1/2; b != 0);
// LaTeX \frac{a}{b}, \dfrac and \tfrac of integers are fractions too. A lone
// "1,2,3" is three numbers, "1.2.3" ends in 3 and "3-5" ends in 5.
#ifndef SWEEPD_WORKER_VERIFY_NUMBER_EXTRACT_H_
#define SWEEPD_WORKER_VERIFY_NUMBER_EXTRACT_H_

#include <optional>
#include <vector>

#include "absl/strings/string_view.h"

namespace sweepd::verify {

// Every number in `text`, in order (rule 3's list).
std::vector<double> FindNumbers(absl::string_view text);

// The committed answer by rules 1-3; nullopt if the text holds no number.
std::optional<double> ExtractAnswerNumber(absl::string_view text);

}  // namespace sweepd::verify

#endif  // SWEEPD_WORKER_VERIFY_NUMBER_EXTRACT_H_
