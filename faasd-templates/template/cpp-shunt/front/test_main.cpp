// The main of unit-test programs (`make test`, `make front-test`): runs
// every FAAS_TEST linked in.
#include "faas_test.hpp"

int main() { return faas::test::run_all(); }
