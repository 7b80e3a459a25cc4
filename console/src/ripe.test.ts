// Unit tests of the result parsers on real RIPE Atlas results (from the test fixtures of
// RIPE-NCC/ripe-atlas-sagan, firmware 4460-4780); expected values were checked against
// sagan's own decoder and openssl.
import { describe, expect, test } from "vitest";
import {
  base64Bytes,
  decodeDns,
  headline,
  mergePaths,
  parseCertificate,
  parseDns,
  parseHttp,
  parseMtr,
  parseNtp,
  parsePing,
  parseSslcert,
  parseTraceroute,
  reached,
  type RawResult,
} from "./ripe";

type Samples = Record<"dns" | "ping" | "traceroute" | "http" | "sslcert", RawResult[]>;
const S: Samples = JSON.parse(String.raw`{"dns":[{"af":4,"dst_addr":"193.227.234.53","from":"217.172.81.146","fw":4460,"msm_id":1004041,"prb_id":184,"proto":"UDP","result":{"ANCOUNT":1,"ARCOUNT":0,"ID":39825,"NSCOUNT":0,"QDCOUNT":1,"abuf":"m5GEAAABAAEAAAAABWFzMjUwA25ldAAAAQABwAwAAQABAAAOEAAEwpaoZA==","answers":[{"RDLENGTH":4,"TYPE":1}],"rt":45.305,"size":43},"timestamp":1347765990,"type":"dns"},{"af":6,"dst_addr":"2001:67c:e0::5","from":"2a02:2860:3:1::a","fw":4720,"group_id":2927179,"lts":30,"msm_id":2927179,"msm_name":"Tdig","prb_id":18279,"proto":"UDP","qbuf":"CcsAAAABAAAAAAABBHJpcGUDbmV0AAAcAAEAACkCAAAAgAAAAAAAAAA=","result":{"ANCOUNT":2,"ARCOUNT":1,"ID":2507,"NSCOUNT":0,"QDCOUNT":1,"abuf":"CcuEAAABAAIAAAABBHJpcGUDbmV0AAAcAAHADAAcAAEAAAEsABAgAQZ8AugAIgAAAADBAAaLwAwALgABAAABLACcABwFAgAAASxWap83VkMEJ4yCBHJpcGUDbmV0ADyhc2zuMQhsu3nU8h2qGCjw/uQM3bzqsrfbaFfSCDH3qG3pPuYJtyzkyFpI8jsUpzYjJJoy29XPeAdqXWoSsHQAD4AhVqmg0/YBctjZuIMKPs7kI3ZWjkkpVqn9kl2OT0r+Moh+gL1W/a1uIkldil0mNCi1xp/V6bRqZfCS+bL0AAApEAAAAIAAAAA=","rt":21.768,"size":233},"src_addr":"2a02:2860:3:1::a","timestamp":1447251248,"type":"dns"},{"from":"2001:410:90ff:0:a2f3:c1ff:fec4:4a01","msm_id":1687656,"timestamp":1403101065,"fw":4610,"proto":"UDP","af":6,"msm_name":"Tdig","prb_id":13330,"result":{"abuf":"n9mEAAABAAIABgACBHR0MDEEcmlwZQNuZXQAAAEAAcAMAAUAAQAAVGAABgNudHDAEcArAAEAAQAAVGAABMEAAOXAEQACAAEAAA4QABAGc25zLXBiA2lzYwNvcmcAwBEAAgABAAAOEAAMA25zMwNuaWMCZnIAwBEAAgABAAAOEAANBHNlYzEFYXBuaWPAFsARAAIAAQAADhAADgZ0aW5uaWUEYXJpbsAWwBEAAgABAAAOEAAHBHNlYzPAhsARAAIAAQAADhAADgNwcmkHYXV0aGRuc8ARwMcAAQABAAAOEAAEwQAJBcDHABwAAQAADhAAECABBnwA4AAAAAAAAAAAAAU=","rt":84.262,"NSCOUNT":6,"QDCOUNT":1,"ID":40921,"ARCOUNT":2,"ANCOUNT":2,"size":257},"result-rt":84.262,"src_addr":"2001:410:90ff:0:a2f3:c1ff:fec4:4a01","group_id":1687656,"type":"dns","dst_addr":"2001:67c:e0::5"},{"from":"2607:fcc0:3:2:220:4aff:fee0:219e","msm_id":1687652,"fw":4610,"timestamp":1403098937,"resultset":[{"src_addr":"208.70.247.155","proto":"UDP","submax":3,"af":4,"subid":1,"result":{"abuf":"KESBgAABAAIAAAAABHJpcGUDbmV0AAAPAAHADAAPAAEAAAEsAAkAyARrb2tvwAzADAAPAAEAAAEsAAkA+gRrYWthwAw=","rt":198.454,"NSCOUNT":0,"QDCOUNT":1,"ID":10308,"ARCOUNT":0,"ANCOUNT":2,"size":68},"time":1403098937,"dst_addr":"208.70.244.7"},{"src_addr":"208.70.247.155","proto":"UDP","submax":3,"af":4,"subid":2,"result":{"abuf":"emqBgAABAAIAAAAABHJpcGUDbmV0AAAPAAHADAAPAAEAAAEsAAkAyARrb2tvwAzADAAPAAEAAAEsAAkA+gRrYWthwAw=","rt":127.644,"NSCOUNT":0,"QDCOUNT":1,"ID":31338,"ARCOUNT":0,"ANCOUNT":2,"size":68},"time":1403098938,"dst_addr":"208.70.245.7"},{"src_addr":"2607:fcc0:3:2:220:4aff:fee0:219e","proto":"UDP","submax":3,"af":6,"subid":3,"time":1403098939,"error":{"timeout":5000},"dst_addr":"2001:4860:4860::8888"}],"prb_id":2793,"group_id":1687652,"type":"dns","msm_name":"Tdig"},{"from":"85.69.130.41","msm_id":1687666,"fw":4610,"timestamp":1403103973,"resultset":[{"src_addr":"10.0.50.116","proto":"UDP","submax":2,"af":4,"subid":1,"result":{"abuf":"sPKBgAABAAIAAAACCGpvaG5ib25kA29yZwAAAgABwAwAAgABAAAOEAAMA25zMQJoZQNuZXQAwAwAAgABAAAOEAAFAm5zwAzAQgABAAEAAVF/AAS5IgCVwCoAAQABAABlRgAE2NqCAg==","rt":1688.621,"NSCOUNT":0,"QDCOUNT":1,"ID":45298,"ARCOUNT":2,"ANCOUNT":2,"size":103},"time":1403103973,"dst_addr":"10.0.0.34"},{"src_addr":"10.0.50.116","proto":"UDP","submax":2,"af":4,"subid":2,"result":{"abuf":"VkGBgAABAAIAAAACCGpvaG5ib25kA29yZwAAAgABwAwAAgABAAAOEAAFAm5zwAzADAACAAEAAA4QAAwDbnMxAmhlA25ldADAKgABAAEAAVGAAAS5IgCVwDsAAQABAAKjAAAE2NqCAg==","rt":932.26,"NSCOUNT":0,"QDCOUNT":1,"ID":22081,"ARCOUNT":2,"ANCOUNT":2,"size":103},"time":1403103976,"dst_addr":"10.0.0.35"}],"prb_id":17868,"group_id":1687666,"type":"dns","msm_name":"Tdig"},{"af":6,"dst_addr":"2001:7fd::1","from":"2a02:1810:3505:de00:a2f3:c1ff:fec4:5ba8","fw":4720,"group_id":2815340,"lts":8,"msm_id":2815340,"msm_name":"Tdig","prb_id":11939,"proto":"UDP","result":{"ANCOUNT":0,"ARCOUNT":1,"ID":62350,"NSCOUNT":4,"QDCOUNT":1,"abuf":"846GAwABAAAABAABCGFhcmR2YXJrAAABAAEDYWFhAAAvAAEAAVGAAA0DYWJiAAAGIAAAAAATwBoALgABAAFRgACTAC8IAQABUYBWLbNQViB2QPRCAC/+fyqSx+gLHZaTO357C33yMzG6vpgWV0neGCUWr1i9g2a0Nc9w4o739PXvpDBQfkDmS6x4msfjU1lQv47U/9jMf7mOrWvlhKXZQ8ZPphqbNfa31h1pCNHu/NzBRLTdWJfMBMWuVbVJLdD/lEi/LW8G61fPbyFZfoM/crsfAkG6AAAvAAEAAVGAAA4DYWFhAAAHIgAAAAADgAAALgABAAFRgACTAC8IAAABUYBWLbNQViB2QPRCAJe1XkAFWiDj0V50PxlG3qSVux6rLfquyrII9HA2VMCLDeetkEgdtW+N7FWoh1Rampi7rho7R32O7HIk561bzdtP5lEA415RXus4Hf8BCXKgRtRoNJsFNAbkPKnbtRzNJAFDbP0mLfC08wSi0zsWRYDxaBLwh9ru/lJjOOR82UFhAAApEAAAAIAAAAA=","rt":18.193,"size":407},"src_addr":"2a02:1810:3505:de00:a2f3:c1ff:fec4:5ba8","timestamp":1445001458,"type":"dns"},{"msm_id":10209,"fw":4660,"timestamp":1413417973,"prb_id":4232,"result":{"abuf":"nfCAgAABAAEAAAAAB3ZlcnNpb24EYmluZAAAEAADwAwAEAABAAAfMAAdHFBvd2VyRE5TIFJlY3Vyc29yIDMuNS4yICRJZCQ=","rt":298.828,"size":71,"ARCOUNT":0,"NSCOUNT":0,"QDCOUNT":1,"ANCOUNT":1,"answers":[{"TYPE":"TXT","NAME":"version.bind","RDATA":"PowerDNS Recursor 3.5.2 $Id$"}],"ID":40432},"src_addr":"10.0.3.6","msm_name":"Tdig","lts":71,"from":"89.179.73.12","proto":"UDP","af":4,"type":"dns","dst_addr":"198.41.0.4"},{"lts":136,"from":"83.163.117.153","msm_id":1020268,"fw":4670,"proto":"UDP","af":4,"msm_name":"Tdig","prb_id":96,"result":{"abuf":"sPKEAAABAAEAAgACB2RyYWdvbnMEYWlveQJldQAAEAABB2RyYWdvbnMEYWlveQJldQAAEAABAAAOEABPJUhlcmUgYmUg/yBkcmFnb25zISBXaXRoIFwgYW5kICIgYW5kIH8IYXMgd2VsbC4fVGhyb3dpbmcgaW4ggCBmb3IgZ29vZCBtZWFzdXJlLsApAAIAAQAADhAABgNuczHAKcApAAIAAQAADhAABgNuczLAKcCXAAEAAQAADhAABIIlDyPAqQAcAAEAAA4QABAgAQRw0WoAEAKgyf/+nxep","rt":33.973,"NSCOUNT":1,"QDCOUNT":1,"answers":[{"TYPE":"TXT","NAME":"dragons.aioy.eu","RDATA":"Here be \u00ff dragons!"}],"ID":45298,"ARCOUNT":2,"ANCOUNT":1,"size":141},"timestamp":1422535611,"src_addr":"10.0.1.61","group_id":1020268,"type":"dns","dst_addr":"130.37.15.35"},{"lts":31,"from":"190.111.120.51","msm_id":10301,"fw":4700,"af":4,"timestamp":1443691516,"proto":"UDP","dst_addr":"193.0.14.129","prb_id":11180,"result":{"abuf":"NSSAhAAAAAAAAAAA","rt":1.282,"NSCOUNT":0,"QDCOUNT":0,"ANCOUNT":0,"ARCOUNT":0,"ID":13604,"size":12},"src_addr":"172.16.0.45","type":"dns","msm_name":"Tdig"},{"from":"2001:d98:6004:1:6666:b3ff:feb0:ec1e","msm_id":1004048,"timestamp":1398939936,"fw":4610,"proto":"UDP","af":6,"result-rdata":null,"dst_addr":"2001:7fd::1","prb_id":14184,"result":{"abuf":"ACuEAAABAAEADQAYAAAGAAEAAAYAAQABUYAAQAFhDHJvb3Qtc2VydmVycwNuZXQABW5zdGxkDHZlcmlzaWduLWdycwNjb20AeAv3NAAABwgAAAOEAAk6gAABUYAAAAIAAQAH6QAAAsAcAAACAAEAB+kAAAQBYsAeAAACAAEAB+kAAAQBY8AeAAACAAEAB+kAAAQBZMAeAAACAAEAB+kAAAQBZcAeAAACAAEAB+kAAAQBZsAeAAACAAEAB+kAAAQBZ8AeAAACAAEAB+kAAAQBaMAeAAACAAEAB+kAAAQBacAeAAACAAEAB+kAAAQBasAeAAACAAEAB+kAAAQBa8AeAAACAAEAB+kAAAQBbMAeAAACAAEAB+kAAAQBbcAewBwAAQABAAfpAAAExikABMB0AAEAAQAH6QAABMDkT8nAgwABAAEAB+kAAATAIQQMwJIAAQABAAfpAAAExwdbDcChAAEAAQAH6QAABMDL5grAsAABAAEAB+kAAATABQXxwL8AAQABAAfpAAAEwHAkBMDOAAEAAQAH6QAABIA/AjXA3QABAAEAB+kAAATAJJQRwOwAAQABAAfpAAAEwDqAHsD7AAEAAQAH6QAABMEADoHBCgABAAEAB+kAAATHB1MqwRkAAQABAAfpAAAEygwbIcAcABwAAQAH6QAAECABBQO6PgAAAAAAAAACADDAgwAcAAEAB+kAABAgAQUAAAIAAAAAAAAAAAAMwJIAHAABAAfpAAAQIAEFAAAtAAAAAAAAAAAADcCwABwAAQAH6QAAECABBQAALwAAAAAAAAAAAA/AzgAcAAEAB+kAABAgAQUAAAEAAAAAAACAPwI1wN0AHAABAAfpAAAQIAEH/gAAAAAAAAAAAAAAU8DsABwAAQAH6QAAECABBQMMJwAAAAAAAAACADDA+wAcAAEAB+kAABAgAQf9AAAAAAAAAAAAAAABwQoAHAABAAfpAAAQIAEFAAADAAAAAAAAAAAAQsEZABwAAQAH6QAAECABDcMAAAAAAAAAAAAAADUAACkQAAAAAAAAGAADABRrMy5hbXMtaXguay5yaXBlLm5ldA==","rt":219.205,"NSCOUNT":13,"QDCOUNT":1,"answers":[{"RNAME":"nstld.verisign-grs.com.","NAME":".","MNAME":"a.root-servers.net.","TTL":86400,"SERIAL":2014050100,"TYPE":"SOA"}],"ID":43,"ARCOUNT":24,"ANCOUNT":1,"size":808},"type":"dns","result-rname":"nstld.verisign-grs.com.","src_addr":"2001:d98:6004:1:6666:b3ff:feb0:ec1e","result-rt":219.205,"result-serial":2014050100,"msm_name":"Tdig"},{"af":6,"dst_addr":"2001:888:1044:10:2a0:c9ff:fe9f:17a9","from":"2001:920:6801:11:a2f3:c1ff:fec4:3fe7","fw":4700,"group_id":2827383,"lts":14,"msm_id":2827383,"msm_name":"Tdig","prb_id":12750,"proto":"UDP","result":{"ANCOUNT":1,"ARCOUNT":0,"ID":52292,"NSCOUNT":1,"QDCOUNT":1,"abuf":"zESEAAABAAEAAQAAATkBQQE3ATEBRgE5AUUBRgFGAUYBOQFDATABQQEyATABMAExATABMAE0ATQBMAExATgBOAE4ATABMQEwATABMgNpcDYEYXJwYQAADAABATkBYQE3ATEBZgE5AWUBZgFmAWYBOQFjATABYQEyATABMAExATABMAE0ATQBMAExATgBOAE4ATABMQEwATABMgNpcDYEYXJwYQAADAABAAAOEAAXB3N0ZXJlbzYCaHEGcGhpY29oA25ldADAggACAAEAAA4QAAYDbnMzwLk=","rt":34.676,"size":215},"src_addr":"2001:920:6801:11:a2f3:c1ff:fec4:3fe7","timestamp":1445246958,"type":"dns"}],"ping":[{"avg":"58.042","dst_addr":"62.2.16.12","dup":"0","fw":0,"max":"58.272","min":"57.876","msm_id":1000192,"prb_id":677,"rcvd":"3","sent":"3","src_addr":"78.128.9.202","timestamp":1328019792,"type":"ping"},{"af":4,"avg":27.301,"dst_addr":"62.2.16.12","dst_name":"hsi.cablecom.ch","dup":0,"from":"80.56.151.3","fw":4550,"lts":365,"max":27.301,"min":27.301,"msm_id":1000192,"msm_name":"Ping","prb_id":202,"proto":"ICMP","rcvd":1,"result":[{"srcaddr":"192.168.1.229","x":"*"},{"x":"*"},{"rtt":27.301,"ttl":54}],"sent":3,"size":20,"src_addr":"192.168.1.229","step":360,"timestamp":1378271710,"ttl":54,"type":"ping"},{"af":4,"avg":-1,"dst_addr":"62.2.16.24","dst_name":"hsi.cablecom.ch","dup":2,"from":"62.195.143.53","fw":4600,"lts":130,"max":-1,"min":-1,"msm_id":1000192,"msm_name":"Ping","prb_id":202,"proto":"ICMP","rcvd":0,"result":[{"srcaddr":"192.168.1.229","x":"*"},{"dup":1,"rtt":1635.423,"ttl":55},{"dup":1,"rtt":1800.494}],"sent":1,"size":12,"src_addr":"192.168.1.229","step":360,"timestamp":1394745831,"ttl":55,"type":"ping"},{"af":4,"prb_id":270,"result":[{"rtt":70.265},{"rtt":54.584,"ttl":51},{"rtt":52.875}],"ttl":51,"avg":59.2413333333,"size":12,"from":"188.193.157.75","proto":"ICMP","timestamp":1406561624,"dup":0,"type":"ping","sent":3,"msm_id":1000192,"fw":4650,"max":70.265,"step":360,"src_addr":"192.168.178.21","rcvd":3,"msm_name":"Ping","lts":76,"dst_name":"hsi.cablecom.ch","min":52.875,"group_id":1000192,"dst_addr":"62.2.16.24"}],"traceroute":[{"af":4,"dst_addr":"121.244.76.25","dst_name":"121.244.76.25","endtime":1344429608,"from":"216.66.30.82","fw":4470,"msm_id":1000157,"paris_id":1,"prb_id":426,"proto":"UDP","result":[{"hop":1,"result":[{"from":"216.66.30.81","rtt":1.965,"size":56,"ttl":255},{"from":"216.66.30.81","rtt":2.004,"size":56,"ttl":255},{"from":"216.66.30.81","rtt":1.855,"size":56,"ttl":255}]},{"hop":2,"result":[{"from":"64.71.128.50","rtt":1.843,"size":56,"ttl":63},{"from":"64.71.128.50","rtt":2.004,"size":56,"ttl":63},{"from":"64.71.128.50","rtt":1.858,"size":56,"ttl":63}]},{"hop":3,"result":[{"from":"213.248.79.129","rtt":2.422,"size":56,"ttl":253},{"from":"213.248.79.129","rtt":1.87,"size":56,"ttl":253},{"from":"213.248.79.129","rtt":1.874,"size":56,"ttl":253}]},{"hop":4,"result":[{"from":"80.91.250.102","rtt":2.327,"size":56,"ttl":251},{"from":"80.91.250.102","rtt":2.076,"size":56,"ttl":251},{"from":"80.91.250.102","rtt":2.321,"size":56,"ttl":251}]},{"hop":5,"result":[{"from":"213.155.135.79","rtt":2.701,"size":56,"ttl":251},{"from":"213.155.135.79","rtt":2.503,"size":56,"ttl":251},{"from":"213.155.135.79","rtt":9.997,"size":56,"ttl":251}]},{"hop":6,"result":[{"from":"209.58.26.89","rtt":2.576,"size":56,"ttl":250},{"from":"209.58.26.89","rtt":2.664,"size":56,"ttl":250},{"from":"209.58.26.89","rtt":14.355,"size":56,"ttl":250}]},{"hop":7,"result":[{"from":"195.219.243.21","rtt":71.449,"size":56,"ttl":249},{"from":"195.219.243.21","rtt":71.435,"size":56,"ttl":249},{"from":"195.219.243.21","rtt":71.311,"size":56,"ttl":249}]},{"hop":8,"result":[{"from":"80.231.131.10","rtt":71.504,"size":56,"ttl":249},{"from":"80.231.131.10","rtt":71.54,"size":56,"ttl":249},{"from":"80.231.131.10","rtt":71.485,"size":56,"ttl":249}]},{"hop":9,"result":[{"from":"195.219.144.118","rtt":197.213,"size":56,"ttl":246},{"from":"195.219.144.118","rtt":222.991,"size":56,"ttl":246},{"from":"195.219.144.118","rtt":196.874,"size":56,"ttl":246}]},{"hop":10,"result":[{"from":"59.163.16.13","ittl":0,"rtt":197.034,"size":56,"ttl":245},{"from":"59.163.16.13","ittl":0,"rtt":200.829,"size":56,"ttl":245},{"from":"59.163.16.13","ittl":0,"rtt":196.889,"size":56,"ttl":245}]},{"hop":11,"result":[{"from":"59.163.16.13","rtt":197.046,"size":56,"ttl":245},{"from":"59.163.16.13","rtt":196.927,"size":56,"ttl":245},{"from":"59.163.16.13","rtt":196.962,"size":56,"ttl":245}]},{"hop":12,"result":[{"from":"203.197.33.148","rtt":197.331,"size":56,"ttl":245},{"from":"203.197.33.148","rtt":197.398,"size":56,"ttl":245},{"from":"203.197.33.148","rtt":197.348,"size":56,"ttl":245}]},{"hop":13,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]},{"hop":14,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]},{"hop":15,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]},{"hop":16,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]},{"hop":17,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]},{"hop":255,"result":[{"x":"*"},{"x":"*"},{"x":"*"}]}],"size":40,"src_addr":"216.66.30.82","timestamp":1344429586,"type":"traceroute"}],"http":[{"from":"2001:780:100:6:220:4aff:fee0:2479","fw":4460,"msm_id":1003930,"prb_id":2707,"result":[{"af":6,"bsize":22383,"dst_addr":"2001:67c:2e8:22::c100:68b","hsize":279,"method":"GET","res":200,"rt":71.146,"src_addr":"2001:780:100:6:220:4aff:fee0:2479","ver":"1.1"}],"timestamp":1350471605,"type":"http","uri":"http://www.ripe.net/"},{"lts":275,"from":"","msm_id":1003932,"fw":4650,"timestamp":1406558081,"uri":"http://www.afrinic.net/","prb_id":902,"result":[{"method":"GET","dst_addr":"2001:42d0:0:200::6","err":"connect: Network is unreachable","af":6}],"type":"http","msm_name":"HTTPGet"},{"fw":1,"msm_id":12023,"prb_id":1,"src_addr":"connect error 4","timestamp":1323118908,"type":"http"}],"sslcert":[{"lts":663,"rt":27.807,"from":"2001:67c:2e8:13:220:4aff:fec6:cc6e","dst_name":"2a00:1450:4005:809::1010","af":6,"timestamp":1410867341,"msm_name":"SSLCert","fw":4660,"prb_id":15,"method":"SSL","cert":["-----BEGIN CERTIFICATE-----\\nMIIEdjCCA16gAwIBAgIIcPRu2ubZ1kMwDQYJKoZIhvcNAQEFBQAwSTELMAkGA1UE\\nBhMCVVMxEzARBgNVBAoTCkdvb2dsZSBJbmMxJTAjBgNVBAMTHEdvb2dsZSBJbnRl\\ncm5ldCBBdXRob3JpdHkgRzIwHhcNMTQwODI3MTE0MDU1WhcNMTQxMTI1MDAwMDAw\\nWjBoMQswCQYDVQQGEwJVUzETMBEGA1UECAwKQ2FsaWZvcm5pYTEWMBQGA1UEBwwN\\nTW91bnRhaW4gVmlldzETMBEGA1UECgwKR29vZ2xlIEluYzEXMBUGA1UEAwwOd3d3\\nLmdvb2dsZS5jb20wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDe2VDg\\n3Yxd0Sz7brxxcDAx4SdhOFIzkOOzL+7MJPWGbBEhGHrWUrVa/0pxFmN8hfNaqm9N\\nd1E3R35j3uJVP2gze3V0+SayfTAKwjKbYf17aU6Y1KB4qIBoDumdqAZvBgG6Ouif\\nrUG9hMs2UjFogH6kvoyfBOVtrrZ82MVHSaxJC55RIGrbzV01r0iFDGHJUIppeOet\\nwM2R7oi5UGTwhP3zcfplrb6hMPkGE3kTkqyj5GtCcsxBT6LzGRE2ttphQDOeW6r2\\nXjUyx/qLiLna+/JLphG2F3MgDkdB6NvOKyHPvGisO2k/Y6a8g3wahD/hs5NNhNVw\\no8OvRlajtAvuPy6tAgMBAAGjggFBMIIBPTAdBgNVHSUEFjAUBggrBgEFBQcDAQYI\\nKwYBBQUHAwIwGQYDVR0RBBIwEIIOd3d3Lmdvb2dsZS5jb20waAYIKwYBBQUHAQEE\\nXDBaMCsGCCsGAQUFBzAChh9odHRwOi8vcGtpLmdvb2dsZS5jb20vR0lBRzIuY3J0\\nMCsGCCsGAQUFBzABhh9odHRwOi8vY2xpZW50czEuZ29vZ2xlLmNvbS9vY3NwMB0G\\nA1UdDgQWBBQzxbnboMDL+J0oSwvalxaNuxIt1TAMBgNVHRMBAf8EAjAAMB8GA1Ud\\nIwQYMBaAFErdBhYbvPZotXb1gba7Yhq6WoEvMBcGA1UdIAQQMA4wDAYKKwYBBAHW\\neQIFATAwBgNVHR8EKTAnMCWgI6Ahhh9odHRwOi8vcGtpLmdvb2dsZS5jb20vR0lB\\nRzIuY3JsMA0GCSqGSIb3DQEBBQUAA4IBAQAKR2+u6lbPzPElTBcb6pqyQ9TLa36v\\nBSq4ZzIV4XfvTidlav5uGpgMOUKJSgg43qN+a3pia+TXLMArxg2LZR3Ioz3zhIwJ\\nblLhHDxBOM8ZY2/u6zFOt/rjf+i/DltTjG7TlIVwBxyEV5hPtsb2S2uupnsOEfM2\\nA76n/u6OT9AcNWOzdKCBD+ifqQf4x5tyFrLOHpS7MM6jwK/LmKGlg4kpd8qQtehU\\nPWjtBglxle0CWZXemDUdBGC1Jy9xdKMRBX1FGUzvF5KDxXScsCtNg9uXV8Bhy0bh\\nbnc6HfiBu6aXU7HPTdhl6uY39b5sA5H8WdLoQI+6FdE755AhhW5ZFG0E\\n-----END CERTIFICATE-----","-----BEGIN CERTIFICATE-----\\nMIIEBDCCAuygAwIBAgIDAjppMA0GCSqGSIb3DQEBBQUAMEIxCzAJBgNVBAYTAlVT\\nMRYwFAYDVQQKEw1HZW9UcnVzdCBJbmMuMRswGQYDVQQDExJHZW9UcnVzdCBHbG9i\\nYWwgQ0EwHhcNMTMwNDA1MTUxNTU1WhcNMTUwNDA0MTUxNTU1WjBJMQswCQYDVQQG\\nEwJVUzETMBEGA1UEChMKR29vZ2xlIEluYzElMCMGA1UEAxMcR29vZ2xlIEludGVy\\nbmV0IEF1dGhvcml0eSBHMjCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEB\\nAJwqBHdc2FCROgajguDYUEi8iT/xGXAaiEZ+4I/F8YnOIe5a/mENtzJEiaB0C1NP\\nVaTOgmKV7utZX8bhBYASxF6UP7xbSDj0U/ck5vuR6RXEz/RTDfRK/J9U3n2+oGtv\\nh8DQUB8oMANA2ghzUWx//zo8pzcGjr1LEQTrfSTe5vn8MXH7lNVg8y5Kr0LSy+rE\\nahqyzFPdFUuLH8gZYR/Nnag+YyuENWllhMgZxUYi+FOVvuOAShDGKuy6lyARxzmZ\\nEASg8GF6lSWMTlJ14rbtCMoU/M4iarNOz0YDl5cDfsCx3nuvRTPPuj5xt970JSXC\\nDTWJnZ37DhF5iR43xa+OcmkCAwEAAaOB+zCB+DAfBgNVHSMEGDAWgBTAephojYn7\\nqwVkDBF9qn1luMrMTjAdBgNVHQ4EFgQUSt0GFhu89mi1dvWBtrtiGrpagS8wEgYD\\nVR0TAQH/BAgwBgEB/wIBADAOBgNVHQ8BAf8EBAMCAQYwOgYDVR0fBDMwMTAvoC2g\\nK4YpaHR0cDovL2NybC5nZW90cnVzdC5jb20vY3Jscy9ndGdsb2JhbC5jcmwwPQYI\\nKwYBBQUHAQEEMTAvMC0GCCsGAQUFBzABhiFodHRwOi8vZ3RnbG9iYWwtb2NzcC5n\\nZW90cnVzdC5jb20wFwYDVR0gBBAwDjAMBgorBgEEAdZ5AgUBMA0GCSqGSIb3DQEB\\nBQUAA4IBAQA21waAESetKhSbOHezI6B1WLuxfoNCunLaHtiONgaX4PCVOzf9G0JY\\n/iLIa704XtE7JW4S615ndkZAkNoUyHgN7ZVm2o6Gb4ChulYylYbc3GrKBIxbf/a/\\nzG+FA1jDaFETzf3I93k9mTXwVqO94FntT0QJo544evZG0R0SnU++0ED8Vf4GXjza\\nHFa9llF7b1cq26KqltyMdMKVvvBulRP/F/A8rLIQjcxz++iPAsbw+zOzlTvjwsto\\nWHPbqCRiOwY1nQ2pM714A5AuTHhdUDqB1O6gyHA43LL5Z/qHQF1hwFGPa4NrzQU6\\nyuGnBXj8ytqU0CwIPX4WecigUCAkVDNx\\n-----END CERTIFICATE-----","-----BEGIN CERTIFICATE-----\\nMIIDfTCCAuagAwIBAgIDErvmMA0GCSqGSIb3DQEBBQUAME4xCzAJBgNVBAYTAlVT\\nMRAwDgYDVQQKEwdFcXVpZmF4MS0wKwYDVQQLEyRFcXVpZmF4IFNlY3VyZSBDZXJ0\\naWZpY2F0ZSBBdXRob3JpdHkwHhcNMDIwNTIxMDQwMDAwWhcNMTgwODIxMDQwMDAw\\nWjBCMQswCQYDVQQGEwJVUzEWMBQGA1UEChMNR2VvVHJ1c3QgSW5jLjEbMBkGA1UE\\nAxMSR2VvVHJ1c3QgR2xvYmFsIENBMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIB\\nCgKCAQEA2swYYzD99BcjGlZ+W988bDjkcbd4kdS8odhM+KhDtgPpTSEHCIjaWC9m\\nOSm9BXiLnTjoBbdqfnGk5sRgprDvgOSJKA+eJdbtg/OtppHHmMlCGDUUna2YRpIu\\nT8rxh0PBFpVXLVDviS2Aelet8u5fa9IAjbkU+BQVNdnARqN7csiRv8lVK83Qlz6c\\nJmTM386DGXHKTubU1XupGc1V3sjs0l44U+VcT4wt/lAjNvxm5suOpDkZALeVAjmR\\nCw7+OC7RHQWa9k0+bw8HHa8sHo9gOeL6NlMTOdReJivbPagUvTLrGAMoUgRx5asz\\nPeE4uwc2hGKceeoWMPRfwCvocWvk+QIDAQABo4HwMIHtMB8GA1UdIwQYMBaAFEjm\\naPkr0rKV10fYIyAQTzOYkJ/UMB0GA1UdDgQWBBTAephojYn7qwVkDBF9qn1luMrM\\nTjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjA6BgNVHR8EMzAxMC+g\\nLaArhilodHRwOi8vY3JsLmdlb3RydXN0LmNvbS9jcmxzL3NlY3VyZWNhLmNybDBO\\nBgNVHSAERzBFMEMGBFUdIAAwOzA5BggrBgEFBQcCARYtaHR0cHM6Ly93d3cuZ2Vv\\ndHJ1c3QuY29tL3Jlc291cmNlcy9yZXBvc2l0b3J5MA0GCSqGSIb3DQEBBQUAA4GB\\nAHbhEm5OSxYShjAGsoEIz/AIx8dxfmbuwu3UOx//8PDITtZDOLC5MH0Y0FWDomrL\\nNhGc6Ehmo21/uBPUR/6LWlxz/K7ZGzIZOKuXNBSqltLroxwUCEm2u+WR74M26x1W\\nb8ravHNjkOR/ez4iyz0H7V84dJzjA1BOoa+Y7mHyhD8S\\n-----END CERTIFICATE-----"],"dst_port":"443","ttc":11.956,"src_addr":"2001:67c:2e8:13:220:4aff:fec6:cc6e","group_id":1012449,"type":"sslcert","dst_addr":"2a00:1450:4005:809::1010","ver":"3.0","msm_id":1012449},{"lts":60,"rt":65.88887,"from":"134.197.42.163","dst_name":"aus5.mozilla.org","af":4,"timestamp":1452783251,"msm_name":"SSLCert","fw":4720,"alert":{"decription":40,"level":2},"method":"TLS","prb_id":10008,"dst_port":"443","ttc":31.621485,"src_addr":"134.197.42.163","group_id":3322890,"type":"sslcert","dst_addr":"63.245.213.47","ver":"1.2","msm_id":3322890},{"af":4,"cert":["-----BEGIN CERTIFICATE-----\nMIIH4jCCBsqgAwIBAgIIFaqhpQEYRXIwDQYJKoZIhvcNAQELBQAwSTELMAkGA1UE\nBhMCVVMxEzARBgNVBAoTCkdvb2dsZSBJbmMxJTAjBgNVBAMTHEdvb2dsZSBJbnRl\ncm5ldCBBdXRob3JpdHkgRzIwHhcNMTcwMzE2MDkzNzQyWhcNMTcwNjA4MDg1NDAw\nWjBmMQswCQYDVQQGEwJVUzETMBEGA1UECAwKQ2FsaWZvcm5pYTEWMBQGA1UEBwwN\nTW91bnRhaW4gVmlldzETMBEGA1UECgwKR29vZ2xlIEluYzEVMBMGA1UEAwwMKi5n\nb29nbGUuY29tMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjgPs3rpA\ntF2jQzXrVQ8x33EVHB3OIpj3GcwVf8U9qcPce0XuG97fHInb20U9Uw1b45ecNRtn\nWLUw14/7+F4cvFJXHHsYaoUdBoeSJAcOy8ktgxvIEMk82KJwJlzWA7X7B459Fy1U\nr8Dvu6dNFzhtu8eJs8bFOMJ/Wczjh8tylKXyWNMpotTbvAG3rGH+8fttmGXnztTB\n3dwxxf6SEL6m4XGH7POxwH9+AKzIwV9PrkU4JM5U2YsGPHf6ao/w27gPVpO5sh3g\nP9J/3jf8lXNwPZWSLCK5C2i7kz12ohaD7jlipVyw4nYLcEFPs27LwzjYa/YFU8VZ\nreIcbazBmDsqBwIDAQABo4IErzCCBKswHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsG\nAQUFBwMCMIIDewYDVR0RBIIDcjCCA26CDCouZ29vZ2xlLmNvbYINKi5hbmRyb2lk\nLmNvbYIWKi5hcHBlbmdpbmUuZ29vZ2xlLmNvbYISKi5jbG91ZC5nb29nbGUuY29t\ngg4qLmdjcC5ndnQyLmNvbYIWKi5nb29nbGUtYW5hbHl0aWNzLmNvbYILKi5nb29n\nbGUuY2GCCyouZ29vZ2xlLmNsgg4qLmdvb2dsZS5jby5pboIOKi5nb29nbGUuY28u\nanCCDiouZ29vZ2xlLmNvLnVrgg8qLmdvb2dsZS5jb20uYXKCDyouZ29vZ2xlLmNv\nbS5hdYIPKi5nb29nbGUuY29tLmJygg8qLmdvb2dsZS5jb20uY2+CDyouZ29vZ2xl\nLmNvbS5teIIPKi5nb29nbGUuY29tLnRygg8qLmdvb2dsZS5jb20udm6CCyouZ29v\nZ2xlLmRlggsqLmdvb2dsZS5lc4ILKi5nb29nbGUuZnKCCyouZ29vZ2xlLmh1ggsq\nLmdvb2dsZS5pdIILKi5nb29nbGUubmyCCyouZ29vZ2xlLnBsggsqLmdvb2dsZS5w\ndIISKi5nb29nbGVhZGFwaXMuY29tgg8qLmdvb2dsZWFwaXMuY26CFCouZ29vZ2xl\nY29tbWVyY2UuY29tghEqLmdvb2dsZXZpZGVvLmNvbYIMKi5nc3RhdGljLmNugg0q\nLmdzdGF0aWMuY29tggoqLmd2dDEuY29tggoqLmd2dDIuY29tghQqLm1ldHJpYy5n\nc3RhdGljLmNvbYIMKi51cmNoaW4uY29tghAqLnVybC5nb29nbGUuY29tghYqLnlv\ndXR1YmUtbm9jb29raWUuY29tgg0qLnlvdXR1YmUuY29tghYqLnlvdXR1YmVlZHVj\nYXRpb24uY29tggsqLnl0aW1nLmNvbYIaYW5kcm9pZC5jbGllbnRzLmdvb2dsZS5j\nb22CC2FuZHJvaWQuY29tghtkZXZlbG9wZXIuYW5kcm9pZC5nb29nbGUuY26CBGcu\nY2+CBmdvby5nbIIUZ29vZ2xlLWFuYWx5dGljcy5jb22CCmdvb2dsZS5jb22CEmdv\nb2dsZWNvbW1lcmNlLmNvbYIKdXJjaGluLmNvbYIKd3d3Lmdvby5nbIIIeW91dHUu\nYmWCC3lvdXR1YmUuY29tghR5b3V0dWJlZWR1Y2F0aW9uLmNvbTBoBggrBgEFBQcB\nAQRcMFowKwYIKwYBBQUHMAKGH2h0dHA6Ly9wa2kuZ29vZ2xlLmNvbS9HSUFHMi5j\ncnQwKwYIKwYBBQUHMAGGH2h0dHA6Ly9jbGllbnRzMS5nb29nbGUuY29tL29jc3Aw\nHQYDVR0OBBYEFHRy1woLF5IqQVubJZ5ZvXAjaJ0aMAwGA1UdEwEB/wQCMAAwHwYD\nVR0jBBgwFoAUSt0GFhu89mi1dvWBtrtiGrpagS8wIQYDVR0gBBowGDAMBgorBgEE\nAdZ5AgUBMAgGBmeBDAECAjAwBgNVHR8EKTAnMCWgI6Ahhh9odHRwOi8vcGtpLmdv\nb2dsZS5jb20vR0lBRzIuY3JsMA0GCSqGSIb3DQEBCwUAA4IBAQAsoPR1jJz2adkK\nTVXpGse/M3l+xKgmuZHpXzXkAiqE9wcsxXxCU3dEUmPBYYGRTqODNkOh9AMyGzIL\nfrYh/zY9rhqJ2B26OunmxKFF9BmwRi2rp+Ksvg/+27F57Hyaq2phSaR8E7hRZcYR\nYqCaNA5e1hialuB1g58mAvs38jxxV4bQhKzCKkBOxolhYbUEBEV4mQ14ODdSvAB0\n8L1dMjk3+LEDB/hWdtpOOhtMbSPa1u7xJeM/Ip7+GV47lS3V6rUALDKz4ASNk8ih\nX0ZmxPA1rabqNFutG8L/4HK2/ffO4bKEkHEdOQXC9B17n1x65fbLUbweDPDAzaow\nrum/OChG\n-----END CERTIFICATE-----"],"dst_addr":"193.0.6.158","dst_name":"atlas.ripe.net","dst_port":"443","from":"86.82.178.27","fw":4760,"lts":133,"method":"TLS","msm_id":14002,"msm_name":"SSLCert","prb_id":10951,"rt":51.558465,"src_addr":"192.168.180.22","timestamp":1490659208,"ttc":14.88238,"type":"sslcert","ver":"1.2"},{"dnserr":"non-recoverable failure in name resolution","dst_name":"pretical.ee","dst_port":"443","from":"77.95.64.18","fw":4550,"msm_id":1006864,"msm_name":"SSLCert","prb_id":517,"timestamp":1380791230,"type":"sslcert"}]}`);
const [dnsA, dnsAAAA, dnsCname, dnsMxSet, dnsNsSet, dnsNx, dnsTxtCh, dnsTxtEsc, dnsNotimp, dnsSoa, dnsPtr] = S.dns;

describe("DNS wire format", () => {
  test("A answer: header, question and address", () => {
    const [x] = parseDns(dnsA);
    expect(x.rcode).toBe("NOERROR");
    expect(x.ancount).toBe(1);
    expect(x.rt).toBe(45.305);
    expect(x.message?.question).toEqual({ name: "as250.net.", type: "A", class: "IN" });
    expect(x.message?.qr).toBe(true);
    expect(x.message?.aa).toBe(true);
    expect(x.message?.rd).toBe(false);
    expect(x.answers).toEqual([{ name: "as250.net.", type: "A", class: "IN", ttl: 3600, data: "194.150.168.100" }]);
  });
  test("AAAA answer is shortened as RFC 5952 says, RRSIG kept as raw data", () => {
    const [x] = parseDns(dnsAAAA);
    expect(x.answers.map((a) => [a.type, a.name])).toEqual([
      ["AAAA", "ripe.net."],
      ["RRSIG", "ripe.net."],
    ]);
    expect(x.answers[0].data).toBe("2001:67c:2e8:22::c100:68b");
    expect(x.answers[1].data).toMatch(/^\\# \d+ [0-9a-f]+/);
  });
  test("CNAME chain then A, with compressed names", () => {
    const [x] = parseDns(dnsCname);
    expect(x.answers.map((a) => `${a.name} ${a.type} ${a.data}`)).toEqual(["tt01.ripe.net. CNAME ntp.ripe.net.", "ntp.ripe.net. A 193.0.0.229"]);
  });
  test("resultset: one exchange per resolver; MX data; an exchange without abuf keeps its counts", () => {
    const xs = parseDns(dnsMxSet);
    expect(xs).toHaveLength(3);
    expect(xs[0].answers.map((a) => a.data)).toEqual(["200 koko.ripe.net.", "250 kaka.ripe.net."]);
    expect(xs[0].dst_addr).toBe(String(((dnsMxSet.resultset as RawResult[])[0] as RawResult).dst_addr));
    expect(xs[2].rcode).toBeUndefined();
    expect(xs[2].answers).toEqual([]);
  });
  test("NS answers", () => {
    const xs = parseDns(dnsNsSet);
    expect(xs[0].answers.map((a) => a.data).sort()).toEqual(["ns.johnbond.org.", "ns1.he.net."]);
  });
  test("NXDOMAIN and NOTIMP rcodes; a header-only message", () => {
    expect(parseDns(dnsNx)[0].rcode).toBe("NXDOMAIN");
    expect(parseDns(dnsNx)[0].answers).toEqual([]);
    const [n] = parseDns(dnsNotimp);
    expect(n.rcode).toBe("NOTIMP");
    expect(n.message?.qdcount).toBe(0);
    expect(n.error).toBeUndefined();
  });
  test("TXT in class CH, and escaping of quotes, backslashes and bytes", () => {
    const [x] = parseDns(dnsTxtCh);
    expect(x.message?.question).toEqual({ name: "version.bind.", type: "TXT", class: "CH" });
    expect(x.answers[0].data).toBe('"PowerDNS Recursor 3.5.2 $Id$"');
    const [y] = parseDns(dnsTxtEsc);
    expect(y.answers[0].data).toBe('"Here be \\255 dragons! With \\\\ and \\" and \\127" "as well." "Throwing in \\128 for good measure."');
  });
  test("SOA and PTR", () => {
    const [s] = parseDns(dnsSoa);
    expect(s.answers[0].type).toBe("SOA");
    expect(s.answers[0].data.startsWith("a.root-servers.net. nstld.verisign-grs.com. ")).toBe(true);
    const [p] = parseDns(dnsPtr);
    expect(p.answers[0]).toMatchObject({ type: "PTR", data: "stereo6.hq.phicoh.net." });
  });
  test("a truncated answer keeps the header and says where it stopped", () => {
    const abuf = String((dnsA.result as RawResult).abuf);
    const bytes = base64Bytes(abuf);
    expect(bytes).toBeDefined();
    const m = decodeDns((bytes as Uint8Array).subarray(0, 30));
    expect(m?.rcodeName).toBe("NOERROR");
    expect(m?.ancount).toBe(1);
    expect(m?.answers).toEqual([]);
    expect(m?.error).toMatch(/truncated|past the end/);
    expect(decodeDns(new Uint8Array(5))).toBeUndefined();
  });
  test("a compression loop is an error, not a hang", () => {
    // header (1 question) then a name that points at itself
    const b = new Uint8Array([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    expect(decodeDns(b)?.error).toMatch(/loop/);
  });
  test("bad base64 and error results", () => {
    expect(base64Bytes("not base64!")).toBeUndefined();
    const x = parseDns({ type: "dns", prb_id: 1, error: { timeout: 5000 } });
    expect(x[0].error).toBe("timeout: 5000");
    const y = parseDns({ type: "dns", result: { abuf: "%%%" } });
    expect(y[0].error).toMatch(/does not decode/);
  });
  test("text answers stay text (nothing is interpreted as markup)", () => {
    // A TXT record holding <script>: built as wire format, decoded to the same characters.
    const txt = "<script>window.__xss=1</script>";
    const head = [0, 1, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0];
    const rr = [0, 0, 16, 0, 1, 0, 0, 0, 60, 0, txt.length + 1, txt.length, ...[...txt].map((c) => c.charCodeAt(0))];
    const m = decodeDns(new Uint8Array([...head, ...rr]));
    expect(m?.answers[0].data).toBe(`"${txt}"`);
  });
});

describe("ping", () => {
  test("old firmware: numbers as strings", () => {
    expect(parsePing(S.ping[0])).toMatchObject({ sent: 3, rcvd: 3, loss: 0, min: 57.876, avg: 58.042, max: 58.272 });
  });
  test("loss, and -1 meaning no reply", () => {
    const p = parsePing(S.ping[1]);
    expect(p).toMatchObject({ sent: 3, rcvd: 1, avg: 27.301 });
    expect(p.loss).toBeCloseTo(2 / 3);
    const none = parsePing(S.ping[2]);
    expect(none).toMatchObject({ sent: 1, rcvd: 0, loss: 1, avg: undefined, min: undefined });
    // duplicates are not replies
    expect(none.rtts).toEqual([]);
  });
  test("replies in order", () => {
    expect(parsePing(S.ping[3]).rtts).toEqual([70.265, 54.584, 52.875]);
    expect(headline(S.ping[3]).value).toBeCloseTo(59.2413333333);
  });
});

describe("traceroute and mtr", () => {
  test("hops, responders, loss; silent hops", () => {
    const r = S.traceroute[0];
    const hops = parseTraceroute(r);
    expect(hops.map((h) => h.hop)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 255]);
    expect(hops[0]).toMatchObject({ responders: [{ from: "216.66.30.81", rtts: [1.965, 2.004, 1.855] }], sent: 3, lost: 0, loss: 0, best: 1.855, worst: 2.004 });
    expect(hops[12]).toMatchObject({ responders: [{ from: "*", rtts: [] }], sent: 3, lost: 3, loss: 1 });
    expect(reached(r, hops)).toBe(false);
  });
  test("mtr hop statistics", () => {
    const r: RawResult = {
      type: "mtr",
      prb_id: 7,
      dst_addr: "192.0.2.9",
      result: [
        { hop: 1, from: "10.0.0.1", stats: { total: 4, rcv: 4, drop: 0, loss: 0, min: 1, avg: 1.5, max: 2, stDev: 0.4 }, timings: [{ rtt: 1 }, { rtt: 2 }, { rtt: 1.5 }, { rtt: 1.5 }] },
        { hop: 2, from: "*", stats: { total: 4, rcv: 0, drop: 4, loss: 100 }, timings: [{ rtt: null }, { rtt: null }, { rtt: null }, { rtt: null }] },
        { hop: 3, from: "192.0.2.9", from_all: ["192.0.2.9", "192.0.2.10"], stats: { total: 4, rcv: 2, drop: 2, loss: 50, min: 9, avg: 10, max: 11 }, timings: [{ rtt: 9 }, { rtt: null }, { rtt: 11 }, { rtt: null }] },
      ],
    };
    const hops = parseMtr(r);
    expect(hops[0]).toMatchObject({ sent: 4, lost: 0, loss: 0, best: 1, avg: 1.5, worst: 2, stdev: 0.4 });
    expect(hops[1]).toMatchObject({ lost: 4, loss: 1 });
    expect(hops[2].loss).toBe(0.5);
    expect(hops[2].responders.map((x) => x.from)).toEqual(["192.0.2.9", "192.0.2.10"]);
    expect(reached(r, hops)).toBe(true);
  });
  test("paths of several probes merge on shared addresses", () => {
    const h = (hop: number, from: string) => ({ hop, responders: [{ from, rtts: [1] }], sent: 1, lost: 0, loss: 0, notes: [] });
    const g = mergePaths([
      { prb_id: 1, hops: [h(1, "10.0.0.1"), h(2, "*"), h(3, "192.0.2.1")] },
      { prb_id: 2, hops: [h(1, "10.9.9.9"), h(2, "*"), h(3, "192.0.2.1")] },
    ]);
    const dst = g.nodes.find((n) => n.id === "192.0.2.1");
    expect(dst?.probes).toEqual([1, 2]);
    // silent hops stay apart per probe
    expect(g.nodes.filter((n) => n.label === "*")).toHaveLength(2);
    expect(g.edges).toHaveLength(6);
  });
});

describe("http", () => {
  test("timings and sizes", () => {
    expect(parseHttp(S.http[0])[0]).toMatchObject({ res: 200, rt: 71.146, hsize: 279, bsize: 22383, method: "GET", ver: "1.1" });
  });
  test("errors", () => {
    expect(parseHttp(S.http[1])[0].error).toBe("connect: Network is unreachable");
    expect(parseHttp(S.http[2])[0].error).toMatch(/unreadable result: connect error 4/);
  });
  test("vantage's verbose timings and headers", () => {
    const r = { type: "http", result: [{ res: 301, rt: 12, ttc: 2, ttfb: 10, hsize: 100, bsize: 0, header: ["HTTP/1.1 301 Moved", "Server: <b>x</b>"] }] };
    expect(parseHttp(r)[0]).toMatchObject({ res: 301, ttc: 2, ttfb: 10, header: ["HTTP/1.1 301 Moved", "Server: <b>x</b>"] });
  });
});

describe("sslcert", () => {
  test("a chain with literal \\n in its PEM, checked against openssl", () => {
    const s = parseSslcert(S.sslcert[0]);
    expect(s.chain.map((c) => c.subject)).toEqual([
      "CN=www.google.com, O=Google Inc, L=Mountain View, ST=California, C=US",
      "CN=Google Internet Authority G2, O=Google Inc, C=US",
      "CN=GeoTrust Global CA, O=GeoTrust Inc., C=US",
    ]);
    expect(s.chain[2].issuer).toBe("OU=Equifax Secure Certificate Authority, O=Equifax, C=US");
    expect(s.chain[0].notBefore).toBe(Date.UTC(2014, 7, 27, 11, 40, 55) / 1000);
    expect(s.chain[0].notAfter).toBe(Date.UTC(2014, 10, 25) / 1000);
    expect(s.valid).toBe(true);
    expect(s.rt).toBe(27.807);
  });
  test("alerts, errors, DNS failures", () => {
    expect(parseSslcert(S.sslcert[1]).error).toBe("TLS alert 40 (level 2)");
    expect(parseSslcert(S.sslcert[3]).error).toBe("non-recoverable failure in name resolution");
    expect(parseSslcert(S.sslcert[2]).chain[0].subject).toContain("CN=*.google.com");
    expect(parseCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").error).toMatch(/does not parse/);
  });
});

describe("ntp", () => {
  test("offsets, rtts and lost packets", () => {
    const r = {
      type: "ntp",
      stratum: 2,
      "ref-id": "GPS",
      result: [
        { "origin-ts": 1, "receive-ts": 1, "transmit-ts": 1, "final-ts": 1, offset: 0.002, rtt: 0.01 },
        { x: "*" },
        { offset: -0.004, rtt: 0.03 },
      ],
    };
    const n = parseNtp(r);
    expect(n).toMatchObject({ stratum: 2, refId: "GPS", offsets: [0.002, -0.004], rtts: [0.01, 0.03], lost: 1 });
    expect(n.offsetAvg).toBeCloseTo(-0.001);
    expect(n.rttAvg).toBeCloseTo(0.02);
  });
});
