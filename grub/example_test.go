package grub_test

import (
	"fmt"
	"log"

	"github.com/xen2kvm/xen2kvm/grub"
)

func ExampleParse() {
	conf := []byte(`default=0
timeout=5
title CentOS (2.6.18-164.el5xen)
	root (hd0,0)
	kernel /vmlinuz-2.6.18-164.el5xen ro root=/dev/xvda2 console=xvc0
	initrd /initrd-2.6.18-164.el5xen.img
title CentOS (2.6.18-164.el5)
	root (hd0,0)
	kernel /vmlinuz-2.6.18-164.el5 ro root=/dev/xvda2
	initrd /initrd-2.6.18-164.el5.img
`)
	c, err := grub.Parse(conf)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.SetDefault(1); err != nil {
		log.Fatal(err)
	}
	e, err := c.DefaultEntry()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Title)
	fmt.Println(e.Kernel, e.Args)
	fmt.Println(e.Initrd)
	fmt.Println(c.Line(c.DefaultLine))
	// Output:
	// CentOS (2.6.18-164.el5)
	// /vmlinuz-2.6.18-164.el5 ro root=/dev/xvda2
	// /initrd-2.6.18-164.el5.img
	// default=1
}
