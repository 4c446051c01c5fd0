%% An Erlang TCP server (compiled by the tests with erlc): on 127.0.0.1:<port>
%% each client gets its own Erlang process that answers every line with a
%% count shared by all of them (an ETS table) and the line. Prints "ready".
-module(erl_echo_counter).
-export([start/1]).

start([Port]) ->
    ets:new(count, [named_table, public]),
    ets:insert(count, {n, 0}),
    {ok, L} = gen_tcp:listen(list_to_integer(atom_to_list(Port)),
                             [binary, {ip, {127, 0, 0, 1}}, {packet, line},
                              {active, false}, {reuseaddr, true}]),
    io:format("ready~n"),
    accept(L).

accept(L) ->
    {ok, S} = gen_tcp:accept(L),
    Pid = spawn(fun() -> receive go -> serve(S) end end),
    ok = gen_tcp:controlling_process(S, Pid),
    Pid ! go,
    accept(L).

serve(S) ->
    case gen_tcp:recv(S, 0) of
        {ok, Line} ->
            N = ets:update_counter(count, n, 1),
            ok = gen_tcp:send(S, [integer_to_list(N), " ", Line]),
            serve(S);
        _ ->
            gen_tcp:close(S)
    end.
