#!/usr/bin/perl
# An SMSC for end-to-end SMS tests, written on Net::SMPP (SMPP 3.4) so that mizu's ESME
# meets a peer nobody on the project wrote.  Driven by line commands on stdin; reports
# events on stdout as one JSON object per line.
#
# Usage: perl smsc.pl [PORT]      (PORT 0 or absent: the kernel picks one)
# Listens on 127.0.0.1 only and prints "LISTENING <port>" when ready.  Serves one ESME
# connection at a time; while one is open, further connections wait in the listen
# backlog and are accepted once it drops (so an ESME can rebind).
#
# Commands (one per line; numbers are decimal or 0x-hex).  Each is answered with
#   {"event":"ok","command":"<name>",...}  or  {"event":"error","command":"<name>","reason":...}
#   accept_binds [SYSTEM_ID PASSWORD]  accept binds with these credentials (others get
#                                      ESME_RINVPASWD 0x0E); no arguments: accept any (default)
#   refuse_binds [STATUS]              answer every bind with STATUS (default ESME_RBINDFAIL 0x0D)
#   submit_status STATUS               command_status of later submit_sm_resp (default 0)
#   deliver SEQ SRC DST ESM_CLASS DATA_CODING HEX [TLV_NAME=HEX ...]
#                                      send a deliver_sm; SEQ "-" takes the next sequence
#                                      number, HEX "-" is an empty short_message, TLV names
#                                      are Net::SMPP's (message_payload, sar_msg_ref_num, ...)
#                                      with their raw value in hex; the ack has "seq";
#                                      a short_message over 254 octets is refused
#   enquire                            send an enquire_link; the ack has "seq"
#   raw HEX                            write these bytes to the ESME as they are
#   silent on|off                      stop (resume) answering the ESME's requests; events
#                                      are still reported
#   close                              drop the ESME connection
#   quit                               exit (so does end of stdin)
#
# Events (every PDU from the ESME gives one, with "seq" and "status" from its header):
#   {"event":"connected","peer_port":N}
#   {"event":"bind","command":"bind_transceiver"|"bind_receiver"|"bind_transmitter",
#    "system_id","password","system_type","interface_version","addr_ton","addr_npi",
#    "address_range","seq","status"}      "status" here is what the SMSC answered
#   {"event":"submit_sm","seq","service_type","source_addr_ton","source_addr_npi",
#    "source_addr","dest_addr_ton","dest_addr_npi","destination_addr","esm_class",
#    "protocol_id","priority_flag","registered_delivery","data_coding",
#    "short_message_hex","tlvs":{"0424":"<hex>",...},"message_id","status"}
#                                         "message_id" ("m1", "m2", ...) and "status" are
#                                         what the SMSC answered
#   {"event":"deliver_sm_resp","seq","status","message_id"}
#   {"event":"enquire_link","seq"}  {"event":"enquire_link_resp","seq","status"}
#   {"event":"unbind","seq"}  {"event":"generic_nack","seq","status"}
#   {"event":"<other Net::SMPP command name>","seq","status"}  (requests get generic_nack
#                                         ESME_RINVCMDID 0x03)
#   {"event":"unknown","command_id":"0x...","seq","status"}    (ditto)
#   {"event":"malformed","reason",...}    a PDU that cannot be decoded; with a bad
#                                         command_length the SMSC sends generic_nack
#                                         ESME_RINVCMDLEN 0x02 and drops the connection,
#                                         with a bad body it sends the generic_nack only
#   {"event":"closed","by":"esme"|"smsc","reason"}
#
# Answers (none while silent): binds get the *_resp of their kind with system_id "smsc",
# or ESME_RALYBND 0x05 when the link is already bound; submit_sm gets submit_sm_resp, or
# ESME_RINVBNDSTS 0x04 unless bound as transmitter or transceiver; enquire_link and
# unbind get their *_resp (unbind also unbinds).  Responses with an error status carry no
# body (SMPP 3.4 4.1.2, 4.4.2).  A command_length outside 16..65536 is malformed.
# Octet strings (system_id, addresses, ...) appear as JSON strings of Latin-1 code points;
# binary fields are hex.
#
# Net::SMPP's read_pdu blocks until a whole PDU has arrived (and forever on an oversized
# command_length), which would freeze the stdin loop, so this script frames PDUs itself
# and hands complete ones to Net::SMPP's own decoders (its pdu_tab); every PDU it sends
# is built by Net::SMPP.
use strict;
use warnings;
use IO::Select;
use JSON::PP;
use Net::SMPP;

use constant HEADER_LEN => 16;
use constant MAX_PDU_LEN => 65536;
use constant ESME_RINVCMDLEN => 0x02;
use constant ESME_RINVCMDID => 0x03;
use constant ESME_RINVBNDSTS => 0x04;
use constant ESME_RALYBND => 0x05;
use constant ESME_RBINDFAIL => 0x0D;
use constant ESME_RINVPASWD => 0x0E;

$SIG{PIPE} = 'IGNORE';    # a write to a vanished ESME must not kill the SMSC
$| = 1;

my $listen = Net::SMPP->new_listen('127.0.0.1', port => (shift // 0), listen => 8,
                                   async => 1, system_id => 'smsc')
    or die "cannot listen: $!\n";
my $json = JSON::PP->new->ascii->canonical;
my $select = IO::Select->new(\*STDIN, $listen);

my ($esme, $esme_buf, $bound) = (undef, '', undef);
my ($want_id, $want_password, $refuse_status, $silent) = (undef, undef, undef, 0);
my ($submit_status, $message_count) = (0, 0);

sub emit { print $json->encode({@_}), "\n" }

sub num {
    my ($text) = @_;
    die "not a number: $text\n" unless defined $text && $text =~ /^(0x[0-9a-f]+|\d+)$/i;
    return $text =~ /^0x/i ? hex($text) : $text + 0;
}

sub unhex {
    my ($text) = @_;
    return '' if $text eq '-';
    die "not hex: $text\n" unless $text =~ /^(?:[0-9a-f]{2})*$/i;
    return pack 'H*', $text;
}

sub drop {
    my ($by, $reason) = @_;
    return unless $esme;
    $select->remove($esme);
    close $esme;
    ($esme, $esme_buf, $bound) = (undef, '', undef);
    $select->add($listen);
    emit(event => 'closed', by => $by, reason => $reason);
}

# A response; per SMPP 3.4 (4.1.2, 4.4.2) its body is left out when the status is an error.
sub respond {
    my ($cmd_id, $seq, $status, $body) = @_;
    return if $silent;
    $esme->resp_backend($cmd_id, $status ? '' : $body, $esme, seq => $seq, status => $status);
}

sub handle_bind {
    my ($pdu, $name) = @_;
    my $status = 0;
    if ($bound) { $status = ESME_RALYBND }
    elsif (defined $refuse_status) { $status = $refuse_status }
    elsif (defined $want_id
           && ($pdu->{system_id} ne $want_id || $pdu->{password} ne $want_password)) {
        $status = ESME_RINVPASWD;
    }
    $bound = $name if !$status;
    emit(event => 'bind', command => $name, seq => $pdu->{seq}, status => $status,
         map { ($_ => $pdu->{$_}) } qw(system_id password system_type interface_version
                                        addr_ton addr_npi address_range));
    respond($pdu->{cmd} | 0x80000000, $pdu->{seq}, $status, pack('Z*', 'smsc'));
}

sub handle_submit {
    my ($pdu, $tlvs) = @_;
    my ($status, $message_id) = ($submit_status, '');
    $status = ESME_RINVBNDSTS if !$bound || $bound eq 'bind_receiver';
    $message_id = 'm' . ++$message_count if !$status;
    emit(event => 'submit_sm', seq => $pdu->{seq}, status => $status,
         message_id => $message_id, tlvs => $tlvs,
         short_message_hex => unpack('H*', $pdu->{short_message}),
         map { ($_ => $pdu->{$_}) } qw(service_type source_addr_ton source_addr_npi
                                        source_addr dest_addr_ton dest_addr_npi
                                        destination_addr esm_class protocol_id priority_flag
                                        registered_delivery data_coding));
    respond(0x80000004, $pdu->{seq}, $status, pack('Z*', $message_id));
}

# The optional parameters after the mandatory ones, as {"tag in hex": "value in hex"}.
sub decode_tlvs {
    my ($data, $offset) = @_;
    my %tlvs;
    while ($offset < length $data) {
        return undef if $offset + 4 > length $data;
        my ($tag, $len) = unpack 'nn', substr($data, $offset, 4);
        return undef if $offset + 4 + $len > length $data;
        $tlvs{sprintf '%04x', $tag} = unpack 'H*', substr($data, $offset + 4, $len);
        $offset += 4 + $len;
    }
    return \%tlvs;
}

sub handle_pdu {
    my ($raw) = @_;
    my (undef, $cmd, $status, $seq) = unpack 'NNNN', $raw;
    my $pdu = { cmd => $cmd, status => $status, seq => $seq, data => substr($raw, HEADER_LEN) };
    my $entry = Net::SMPP::pdu_tab()->{$cmd};
    undef $entry if $entry && $entry->{cmd} =~ /_v4$/;
    if (!$entry) {
        emit(event => 'unknown', command_id => sprintf('0x%08x', $cmd), seq => $seq,
             status => $status);
        respond(0x80000000, $seq, ESME_RINVCMDID, '') unless $cmd & 0x80000000;
        return;
    }
    my $name = $entry->{cmd};
    my $mandatory = eval { $entry->{decode}->($pdu, $esme) };
    my $tlvs = defined $mandatory && $mandatory <= length $pdu->{data}
        ? decode_tlvs($pdu->{data}, $mandatory) : undef;
    if (!$tlvs) {
        emit(event => 'malformed', reason => 'undecodable body', command => $name, seq => $seq,
             hex => unpack('H*', $raw));
        respond(0x80000000, $seq, ESME_RINVCMDLEN, '');
        return;
    }
    if ($name =~ /^bind_(transceiver|transmitter|receiver)$/) { handle_bind($pdu, $name) }
    elsif ($name eq 'submit_sm') { handle_submit($pdu, $tlvs) }
    elsif ($name eq 'enquire_link') {
        emit(event => $name, seq => $seq);
        respond(0x80000015, $seq, 0, '');
    }
    elsif ($name eq 'unbind') {
        emit(event => $name, seq => $seq);
        $bound = undef;
        respond(0x80000006, $seq, 0, '');
    }
    elsif ($name eq 'deliver_sm_resp') {
        emit(event => $name, seq => $seq, status => $status,
             message_id => $pdu->{message_id} // '');
    }
    else {
        emit(event => $name, seq => $seq, status => $status);
        respond(0x80000000, $seq, ESME_RINVCMDID, '') unless $cmd & 0x80000000;
    }
}

sub read_esme {
    my $n = sysread $esme, $esme_buf, 65536, length $esme_buf;
    if (!defined $n) { return if $!{EINTR} || $!{EAGAIN}; return drop('esme', "error: $!") }
    return drop('esme', 'eof') if !$n;
    while ($esme && length($esme_buf) >= 4) {
        my $len = unpack 'N', $esme_buf;
        if ($len < HEADER_LEN || $len > MAX_PDU_LEN) {
            my $seq = length($esme_buf) >= HEADER_LEN ? unpack('x12 N', $esme_buf) : 0;
            emit(event => 'malformed', reason => "command_length $len",
                 hex => unpack('H*', substr($esme_buf, 0, HEADER_LEN)));
            respond(0x80000000, $seq, ESME_RINVCMDLEN, '');
            return drop('smsc', 'malformed');
        }
        last if length($esme_buf) < $len;
        handle_pdu(substr($esme_buf, 0, $len, ''));
    }
}

sub need_esme { die "no ESME connected\n" unless $esme }

my %commands = (
    accept_binds => sub {
        die "usage: accept_binds [SYSTEM_ID PASSWORD]\n" unless @_ == 0 || @_ == 2;
        ($want_id, $want_password, $refuse_status) = (@_ ? @_ : (undef, undef), undef);
        return ();
    },
    refuse_binds => sub { $refuse_status = @_ ? num($_[0]) : ESME_RBINDFAIL; return () },
    submit_status => sub { $submit_status = num($_[0]); return () },
    deliver => sub {
        my ($seq, $source, $destination, $esm_class, $coding, $hex, @options) = @_;
        die "usage: deliver SEQ SRC DST ESM_CLASS DATA_CODING HEX [TLV=HEX ...]\n"
            unless defined $hex;
        need_esme();
        my @tlvs = map {
            /^(\w+)=(\S*)$/ && $Net::SMPP::param_by_name{$1} or die "bad TLV: $_\n";
            ($1 => unhex($2));
        } @options;
        my $short_message = unhex($hex);
        # Net::SMPP packs sm_length into one octet without a check
        die "short_message over 254 octets: use message_payload=HEX\n"
            if length $short_message > 254;
        my $sent = $esme->deliver_sm(
            source_addr => $source, destination_addr => $destination,
            esm_class => num($esm_class), data_coding => num($coding),
            short_message => $short_message, ($seq eq '-' ? () : (seq => num($seq))), @tlvs);
        return (seq => $sent);
    },
    enquire => sub { need_esme(); return (seq => $esme->enquire_link()) },
    raw => sub {
        need_esme();
        my $bytes = unhex($_[0] // '');
        syswrite $esme, $bytes if length $bytes;
        return (bytes => length $bytes);
    },
    silent => sub {
        die "usage: silent on|off\n" unless ($_[0] // '') =~ /^(on|off)$/;
        $silent = $_[0] eq 'on';
        return ();
    },
    close => sub { need_esme(); drop('smsc', 'close command'); return () },
    quit => sub { emit(event => 'ok', command => 'quit'); exit 0 },
);

sub run_command {
    my ($line) = @_;
    my ($name, @args) = split ' ', $line;
    return unless defined $name;
    my $command = $commands{$name};
    my @result = eval { die "unknown command\n" unless $command; $command->(@args) };
    if ($@) { (my $reason = $@) =~ s/\s+$//; emit(event => 'error', command => $name, reason => $reason) }
    else { emit(event => 'ok', command => $name, @result) }
}

print "LISTENING ", $listen->sockport, "\n";
my $stdin_buf = '';
while (1) {
    for my $handle ($select->can_read) {
        my $fd = fileno $handle;
        next unless defined $fd;    # dropped earlier in this round
        if ($fd == fileno(STDIN)) {
            my $n = sysread STDIN, $stdin_buf, 4096, length $stdin_buf;
            next if !defined $n && ($!{EINTR} || $!{EAGAIN});
            exit 0 if !$n;
            run_command($1) while $stdin_buf =~ s/^([^\n]*)\n//;
        }
        elsif ($fd == fileno($listen)) {
            next if $esme;
            my $accepted = $listen->accept or next;
            ($esme, $esme_buf, $bound) = ($accepted, '', undef);
            $select->remove($listen);
            $select->add($esme);
            emit(event => 'connected', peer_port => $esme->peerport);
        }
        elsif ($esme && $fd == fileno($esme)) {
            read_esme();
        }
    }
}
