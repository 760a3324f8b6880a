// Package warm is the warm-migration benchmark (bench/warm.sh): the
// downtime of xen2kvm migrate --warm against a cold migration of the same
// final image, from the stand-in Xen host of internal/testsshd. Its test
// is behind the build tag bench, so CI never runs it.
package warm
