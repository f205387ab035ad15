"""An example agent for the agents profile: it answers with what it was told. Replace it with
your own graphs; the portal lists each graph as the model `agent:<graph_id>`."""
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState):
    said = state["messages"][-1].content if state["messages"] else ""
    return {"messages": [AIMessage(content=f"You said: {said}")]}


builder = StateGraph(MessagesState)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)
echo = builder.compile()
