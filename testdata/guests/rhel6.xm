name = "rhel6"
uuid = "e615aa8c-0bc0-4f64-a1c0-8a01235ebaf6"
maxmem = 512
memory = 512
vcpus = 1
bootloader = "/usr/bin/pygrub"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
vfb = [ ]
disk = [ "file:/var/lib/xen/images/rhel6.img,xvda,w" ]
vif = [ "mac=00:16:3e:46:ee:c4,bridge=xenbr0,script=vif-bridge" ]
