//! Black-box end-to-end tests of the `starledger` binary live in `tests/tests/`.
