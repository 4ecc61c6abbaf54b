// A cgo program linked statically: glibc's start-up inside a static ELF,
// which the loader must refuse.
package main

// int twice(int x) { return 2 * x; }
import "C"

import "fmt"

func main() { fmt.Println(C.twice(21)) }
