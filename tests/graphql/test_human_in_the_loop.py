"""Human in the loop: interrupt() and resume, static breakpoints, state edits, Command goto/update."""

from __future__ import annotations

from tests.conftest import GraphQLClient
from tests.helpers import GET_THREAD, new_thread, run_and_wait, thread_of

STATE = "query($id: ID!) { thread(id: $id) { status state { values next interrupts { id value } tasks { name interrupts { value } } } } }"


async def test_interrupt_then_resume(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    asked = await run_and_wait(
        gql_client, assistantId="interrupt", threadId=tid, input={"question": "Ship it?"}
    )
    # As on LangGraph Server: the run succeeds; the thread is the one that is interrupted.
    assert asked["run"]["status"] == "SUCCESS"
    assert [i["value"] for i in asked["interrupts"]] == [{"question": "Ship it?"}]
    thread = (await gql_client.data(STATE, {"id": tid}))["thread"]
    assert thread["status"] == "INTERRUPTED"
    assert thread["state"]["next"] == ["ask"]
    assert [i["value"] for i in thread["state"]["interrupts"]] == [{"question": "Ship it?"}]
    assert thread["state"]["tasks"][0]["interrupts"] == [{"value": {"question": "Ship it?"}}]
    plain = await thread_of(gql_client, tid)
    assert [i["value"] for i in plain["interrupts"]] == [{"question": "Ship it?"}]
    assert plain["interrupts"][0]["id"] == asked["interrupts"][0]["id"]

    resumed = await run_and_wait(
        gql_client, assistantId="interrupt", threadId=tid, command={"resume": "yes"}
    )
    assert resumed["run"]["status"] == "SUCCESS"
    assert resumed["interrupts"] == []
    assert resumed["values"] == {"question": "Ship it?", "answer": "yes"}
    after = await thread_of(gql_client, tid)
    assert after["status"] == "IDLE" and after["interrupts"] == []


async def test_resume_a_given_interrupt_by_id(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    asked = await run_and_wait(gql_client, assistantId="interrupt", threadId=tid, input={})
    interrupt_id = asked["interrupts"][0]["id"]
    resumed = await run_and_wait(
        gql_client,
        assistantId="interrupt",
        threadId=tid,
        command={"resume": {interrupt_id: "by id"}},
    )
    assert resumed["values"]["answer"] == "by id"


async def test_interrupt_before_and_after_pause_at_nodes(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    paused = await run_and_wait(
        gql_client,
        assistantId="steps",
        threadId=tid,
        input={"count": 0},
        interruptBefore=["step_3"],
    )
    assert paused["values"] == {"count": 2}
    thread = (await gql_client.data(STATE, {"id": tid}))["thread"]
    assert thread["status"] == "INTERRUPTED" and thread["state"]["next"] == ["step_3"]
    # A run with no input continues from the breakpoint.
    done = await run_and_wait(gql_client, assistantId="steps", threadId=tid)
    assert done["values"] == {"count": 5}
    assert (await thread_of(gql_client, tid))["status"] == "IDLE"

    tid2 = await new_thread(gql_client)
    after = await run_and_wait(
        gql_client,
        assistantId="steps",
        threadId=tid2,
        input={"count": 0},
        interruptAfter=["step_1"],
    )
    assert after["values"] == {"count": 1}
    assert (await gql_client.data(STATE, {"id": tid2}))["thread"]["state"]["next"] == ["step_2"]


async def test_update_state_as_node_then_continue(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(
        gql_client,
        assistantId="steps",
        threadId=tid,
        input={"count": 0},
        interruptBefore=["step_4"],
    )
    await gql_client.data(
        'mutation($id: ID!) { updateThreadState(threadId: $id, values: {count: 100}, asNode: "step_4") { checkpoint { checkpointId } } }',
        {"id": tid},
    )
    state = (await gql_client.data(STATE, {"id": tid}))["thread"]["state"]
    assert state["values"] == {"count": 100} and state["next"] == ["step_5"]
    done = await run_and_wait(gql_client, assistantId="steps", threadId=tid)
    assert done["values"] == {"count": 101}


async def test_command_goto_and_update(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "A"},
        interruptBefore=["wait"],
    )
    # `wait` is pending; goto adds `after` to the same step (it runs again after `wait`), as
    # LangGraph's own Command does; update sets the tag first.
    jumped = await run_and_wait(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        command={"goto": "after", "update": {"tag": "G"}},
    )
    assert jumped["values"] == {"tag": "G", "log": ["first:A", "after:G", "after:G"]}
    tid2 = await new_thread(gql_client)
    pairs = await run_and_wait(
        gql_client,
        assistantId="pipeline",
        threadId=tid2,
        command={"goto": ["after"], "update": [["tag", "P"]]},
    )
    assert pairs["values"]["tag"] == "P"
    assert sorted(pairs["values"]["log"]) == ["after:P", "after:P", "first:P"]
    sent = await run_and_wait(
        gql_client,
        assistantId="pipeline",
        command={"goto": {"node": "after", "input": {"tag": "S"}}},
    )
    assert "after:S" in sent["values"]["log"]


async def test_thread_get_shows_interrupts(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(gql_client, assistantId="interrupt", threadId=tid, input={"question": "?"})
    got = (await gql_client.data(GET_THREAD, {"id": tid}))["thread"]
    assert got["status"] == "INTERRUPTED" and got["interrupts"][0]["value"] == {"question": "?"}
