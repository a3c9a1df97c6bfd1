// Placeholder until the binary lands (issue 2).
package main

func main() {}
