name = "centos5-xenonly"
uuid = "e3e49e59-d520-445f-b1fd-d5d094beb61b"
maxmem = 512
memory = 512
vcpus = 1
bootloader = "/usr/bin/pygrub"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
vfb = [ ]
disk = [ "tap:aio:/var/lib/xen/images/centos5-xenonly.img,xvda,w" ]
vif = [ "mac=00:16:3e:55:5a:fc,bridge=xenbr0,script=vif-bridge" ]
