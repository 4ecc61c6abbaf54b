// Test program for shunt's Go target: the smallest program that prints.
package main

import "fmt"

func main() { fmt.Println("hello from a shunt-built Go program") }
