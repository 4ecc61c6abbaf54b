// A static Go program that prints, one per line and sorted, the files mapped
// in its own process other than its own executable (named by argv[1]):
// natively nothing, under shunt the binary it was started in.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		fmt.Println("cannot read maps:", err)
		os.Exit(2)
	}
	self, _ := filepath.EvalSymlinks(os.Args[1])
	seen := map[string]bool{}
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasPrefix(f[5], "/") || f[5] == self {
			continue
		}
		seen[f[5]] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n)
	}
}
