package main

import "os"

// selfPID is this process.
var selfPID = os.Getpid()
